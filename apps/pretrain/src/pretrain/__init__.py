"""pretrain app."""

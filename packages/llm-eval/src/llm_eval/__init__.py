"""llm-eval: bits per byte, zero-shot tasks with per-item results, in-loop eval, distillation."""

from llm_eval.callback import InLoopEval
from llm_eval.multiple_choice import evaluate_lambada, evaluate_multiple_choice, mean_stderr
from llm_eval.perplexity import bits_per_byte, bits_per_byte_sets
from llm_eval.protocols import LanguageModel, TokenizerLike, eval_mode
from llm_eval.ranks import Ranks
from llm_eval.suite import run_suite
from llm_eval.tasks import TaskItem, load_tasks
from llm_eval.texts import load_texts

__all__ = [
    "InLoopEval",
    "LanguageModel",
    "Ranks",
    "TaskItem",
    "TokenizerLike",
    "bits_per_byte",
    "bits_per_byte_sets",
    "eval_mode",
    "evaluate_lambada",
    "evaluate_multiple_choice",
    "load_tasks",
    "load_texts",
    "mean_stderr",
    "run_suite",
]

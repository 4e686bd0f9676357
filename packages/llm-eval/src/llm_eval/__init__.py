"""llm-eval: bits per byte, zero-shot tasks with per-item results, in-loop eval, distillation,
HumanEval with generated code run in a sandbox."""

from llm_eval.callback import InLoopEval
from llm_eval.humaneval import evaluate_humaneval, load_humaneval, pass_at_k
from llm_eval.multiple_choice import evaluate_lambada, evaluate_multiple_choice, mean_stderr
from llm_eval.perplexity import bits_per_byte, bits_per_byte_sets
from llm_eval.protocols import LanguageModel, TokenizerLike, eval_mode
from llm_eval.ranks import Ranks
from llm_eval.sandbox import SandboxConfig, SandboxResult, run_program
from llm_eval.suite import run_suite
from llm_eval.tasks import TaskItem, load_tasks
from llm_eval.texts import load_texts

__all__ = [
    "InLoopEval",
    "LanguageModel",
    "Ranks",
    "SandboxConfig",
    "SandboxResult",
    "TaskItem",
    "TokenizerLike",
    "bits_per_byte",
    "bits_per_byte_sets",
    "eval_mode",
    "evaluate_humaneval",
    "evaluate_lambada",
    "evaluate_multiple_choice",
    "load_humaneval",
    "load_tasks",
    "load_texts",
    "mean_stderr",
    "pass_at_k",
    "run_program",
    "run_suite",
]

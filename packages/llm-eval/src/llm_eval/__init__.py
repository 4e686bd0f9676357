"""llm-eval: bits per byte, zero-shot multiple-choice tasks, in-loop evaluation."""

from llm_eval.callback import InLoopEval
from llm_eval.multiple_choice import evaluate_lambada, evaluate_multiple_choice
from llm_eval.perplexity import bits_per_byte
from llm_eval.protocols import LanguageModel, TokenizerLike, eval_mode
from llm_eval.suite import run_suite
from llm_eval.tasks import TaskItem, load_tasks

__all__ = [
    "InLoopEval",
    "LanguageModel",
    "TaskItem",
    "TokenizerLike",
    "bits_per_byte",
    "eval_mode",
    "evaluate_lambada",
    "evaluate_multiple_choice",
    "load_tasks",
    "run_suite",
]

"""An LLM that talks: :class:`LLMAgent` answers turns with any OpenAI-compatible chat model (``voice[openai]``),
streaming its words into speech, with typed Python functions as tools (:func:`tool`).

The ``openai`` package is imported only when a model is called (or :meth:`LLMAgent.configured` is used), so this
module imports without it.
"""

from .agent import LLMAgent
from .client import MissingOpenAI
from .tools import Tool, tool

__all__ = ["LLMAgent", "MissingOpenAI", "Tool", "tool"]

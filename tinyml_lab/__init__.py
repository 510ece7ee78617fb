"""tinyml_lab: the engine of the book.

int8 kernels to the TFLite spec, a graph IR, the MLPerf Tiny model zoo, and
(in the subpackages) quantization, on-device training, memory planning, MCU
simulation and deployment exports.
"""

__version__ = "0.1.0"

from .errors import TinyMLError  # noqa: E402
from .graph import Graph, GraphBuilder, Node, QuantParams, Tensor  # noqa: E402

__all__ = ["__version__", "TinyMLError", "Graph", "GraphBuilder", "Node", "QuantParams", "Tensor"]

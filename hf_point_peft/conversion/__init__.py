"""Official fine-tuned checkpoints of the three PEFT methods -> adapter folders (and the base model folders they
belong to): `convert_pointgst_checkpoint`, `convert_point_prompt_checkpoint`, `convert_any2point_checkpoint`, behind
`point-peft convert --from pointgst | point-prompt | any2point`."""

from .any2point import any2point_deviations, convert_any2point_checkpoint
from .common import ConvertedAdapter
from .point_prompt import POINT_PROMPT_DEVIATIONS, convert_point_prompt_checkpoint
from .pointgst import POINTGST_DEVIATIONS, convert_pointgst_checkpoint

METHOD_CONVERTERS = {
    "pointgst": convert_pointgst_checkpoint,
    "point-prompt": convert_point_prompt_checkpoint,
    "any2point": convert_any2point_checkpoint,
}

__all__ = [
    "METHOD_CONVERTERS",
    "POINTGST_DEVIATIONS",
    "POINT_PROMPT_DEVIATIONS",
    "ConvertedAdapter",
    "any2point_deviations",
    "convert_any2point_checkpoint",
    "convert_point_prompt_checkpoint",
    "convert_pointgst_checkpoint",
]

"""Push a trained adapter folder (with its model card) to the Hugging Face Hub. Needs a token (HF_TOKEN).

python examples/push_adapter.py outputs/pointgst-synthetic/adapter user/pointgst-synthetic
"""

import sys

from hf_point_peft.hub import push_folder

print(push_folder(sys.argv[1], sys.argv[2]))

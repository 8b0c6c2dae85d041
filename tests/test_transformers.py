"""Transformers: a Hugging Face text classifier and a timm vision transformer,
built from configs with random weights (nothing is downloaded)."""

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from sklearn.model_selection import cross_val_score
from torch.utils.data import Dataset

from sknap import ActivationExtractor, make_nap_pipeline
from sknap.data import IndexedDataset

pytestmark = pytest.mark.filterwarnings("ignore::sknap.DeadNeuronWarning")

N, VOCAB, C = 48, 40, 3


def _bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        num_labels=C,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config).eval()


class _Tokens(Dataset):
    """A tokenizer's output: token ids, padded to ``length``, and the mask."""

    def __init__(self, length, seed=0):
        rng = np.random.default_rng(seed)
        self.lengths = rng.integers(3, 10, size=N)
        self.ids = rng.integers(1, VOCAB, size=(N, 10))
        self.labels = rng.integers(0, C, size=N)
        self.length = length

    def __len__(self):
        return N

    def __getitem__(self, i):
        ids = torch.zeros(self.length, dtype=torch.int64)
        mask = torch.zeros(self.length, dtype=torch.int64)
        k = self.lengths[i]
        ids[:k] = torch.from_numpy(self.ids[i, :k])
        mask[:k] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": self.labels[i]}


def test_token_ids_and_masks_reach_the_model_and_only_real_tokens_count():
    model = _bert()
    short, long = _Tokens(12), _Tokens(20)
    extractor = ActivationExtractor(model, batch_size=16, device="cpu").fit(short)
    # Every GELU of the encoder, by default; one neuron per unit.
    assert extractor.layer_names_ == [
        "bert.encoder.layer.0.intermediate.intermediate_act_fn",
        "bert.encoder.layer.1.intermediate.intermediate_act_fn",
    ]
    assert extractor.n_neurons_ == 2 * 24 and extractor.n_outputs_ == C
    Z = extractor.transform(short)
    # Padding to another length changes nothing: pads are not tokens.
    assert_allclose(extractor.transform(long), Z, rtol=1e-4, atol=1e-5)
    # By hand: the mean over the real tokens of the first GELU's output.
    seen = {}
    act = model.bert.encoder.layer[0].intermediate.intermediate_act_fn
    handle = act.register_forward_hook(lambda m, i, o: seen.update(out=o))
    item = short[0]
    with torch.no_grad():
        logits = model(
            input_ids=item["input_ids"][None],
            attention_mask=item["attention_mask"][None],
        ).logits
    handle.remove()
    k = int(item["attention_mask"].sum())
    assert_allclose(Z[0, :24], seen["out"][0, :k].mean(0).numpy(), rtol=1e-4)
    assert_allclose(Z[0, -C:], torch.softmax(logits, 1)[0].numpy(), rtol=1e-4)


def test_a_text_classifier_through_the_pipeline_and_cross_validation():
    model = _bert()
    data = _Tokens(12)
    pipe = make_nap_pipeline(model, batch_size=16, max_iter=2, device="cpu")
    pipe.set_params(auxiliary__random_state=0)
    pipe.fit(data, data.labels)
    assert pipe.predict(data).shape == (N,)
    scores = cross_val_score(pipe, IndexedDataset(data), data.labels, cv=3)
    assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


def test_a_timm_vision_transformer_through_the_pipeline():
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=C,
    ).eval()
    rng = np.random.default_rng(0)
    X = rng.random((N, 3, 32, 32), dtype=np.float32)
    y = np.arange(N) % C
    pipe = make_nap_pipeline(model, batch_size=16, max_iter=2, device="cpu")
    pipe.fit(X, y)
    extractor = pipe["extractor"]
    assert extractor.layer_names_ == ["blocks.0.mlp.act", "blocks.1.mlp.act"]
    # The mean over the 16 patches and the class token, per unit.
    assert extractor.n_neurons_ == 2 * 128
    assert pipe.score(X, y) >= 0

"""Hugging Face models built from a config with random weights (nothing is downloaded)."""

import warnings

import numpy as np
import pytest
import torch

import sgdscope as sg
from sgdscope.noise.losses import sequence_cross_entropy
from sgdscope.reference.noise import per_sample_gradients_loop

transformers = pytest.importorskip("transformers")


def _vmap_reference(model, loss, data):
    with warnings.catch_warnings():
        # vmap loops over the attention kernel here: slow but exact, which is all a reference needs
        warnings.filterwarnings("ignore", message="There is a performance drop")
        return sg.GradientNoise(model, loss, data, backend="vmap").per_sample_gradients()


def test_gpt2_per_sequence_gradients_products_and_gram_equal_vmap():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=40, n_positions=12, n_embd=16, n_layer=2, n_head=2,
        attn_pdrop=0.0, embd_pdrop=0.0, resid_pdrop=0.0,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    assert model.lm_head.weight is model.transformer.wte.weight  # tied
    ids = torch.randint(0, 40, (14, 10), generator=torch.Generator().manual_seed(1))
    data = {"input_ids": ids, "labels": ids}  # one sample = one sequence
    noise = sg.GradientNoise(model, sequence_cross_entropy, data, chunk_size=4)
    assert noise.backend == "hooks", noise._stream.backend_reason
    G = _vmap_reference(model, sequence_cross_entropy, data)
    scale = G.abs().max()
    torch.testing.assert_close(noise.per_sample_gradients(), G, rtol=1e-4, atol=1e-5 * scale)
    G = G.double()
    Gc = G - G.mean(0)
    K = Gc @ Gc.T / G.shape[0]
    spec = noise.spectrum(method="gram", eigenvectors=2)
    lam = torch.linalg.eigvalsh(K).flip(0)[: spec.eigenvalues.size].clamp_min(0).numpy()
    np.testing.assert_allclose(spec.eigenvalues, lam, rtol=1e-3, atol=1e-5 * lam[0])
    assert noise.trace() == pytest.approx(float(K.trace()), rel=1e-4)
    assert noise.noise_scale() == pytest.approx(
        float(K.trace() / (G.mean(0) @ G.mean(0))), rel=1e-4
    )


def test_vit_with_class_token_and_lora_style_subset():
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=1, hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=24, num_labels=3,
    )  # fmt: skip
    model = transformers.ViTForImageClassification(config).eval()
    x = torch.randn(9, 1, 8, 8)
    y = torch.randint(0, 3, (9,))

    def loss(out, t):
        return torch.nn.functional.cross_entropy(out.logits, t, reduction="none")

    data = ({"pixel_values": x}, y)
    noise = sg.GradientNoise(model, loss, data, chunk_size=4)
    assert noise.backend == "hooks", noise._stream.backend_reason
    G = _vmap_reference(model, loss, data)
    torch.testing.assert_close(
        noise.per_sample_gradients(), G, rtol=1e-4, atol=1e-5 * G.abs().max()
    )
    # a parameter subset (as LoRA fine-tuning selects): the attention's query projection only
    sub = sg.GradientNoise(model, loss, data, params=model.vit.layers[0].attention.q_proj)
    names = list(sub.layout.names)
    assert names == ["vit.layers.0.attention.q_proj.weight", "vit.layers.0.attention.q_proj.bias"]
    cols = torch.cat([torch.arange(G.shape[1])[noise.layout.slice(n)] for n in names])
    torch.testing.assert_close(
        sub.per_sample_gradients(), G[:, cols], rtol=1e-4, atol=1e-5 * G.abs().max()
    )


def test_bert_with_padding_mask_and_token_types():
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=30, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=16, num_labels=2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    model = transformers.BertForSequenceClassification(config).eval()
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 30, (10, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[:4, -3:] = 0  # padded sequences: their padding must not leak into other samples
    types = torch.randint(0, 2, (10, 7), generator=g)

    def loss(out, t):
        return torch.nn.functional.cross_entropy(out.logits, t, reduction="none")

    data = (
        {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
        torch.randint(0, 2, (10,), generator=g),
    )
    noise = sg.GradientNoise(model, loss, data, chunk_size=3)
    assert noise.backend == "hooks", noise._stream.backend_reason
    # reference: one backward per sample (vmap cannot run BERT's data-dependent mask handling)
    G = per_sample_gradients_loop(model, loss, *data)
    torch.testing.assert_close(
        noise.per_sample_gradients(), G, rtol=1e-4, atol=1e-5 * G.abs().max()
    )
    with pytest.raises(RuntimeError, match="vmap"):  # why the hooks are the default
        sg.GradientNoise(model, loss, data, backend="vmap").per_sample_gradients()

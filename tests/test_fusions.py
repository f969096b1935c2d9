"""Published fusions against their papers' closed forms."""

import torch

from msa_ablate.models.fusions import LowRankFusion, TensorFusion
from msa_ablate.models.sequences import masked_mean

MODALITIES = ("text", "audio", "vision")


def inputs(dim: int = 8, batch: int = 5) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(0)
    seqs = {m: torch.randn(batch, steps, dim, generator=generator) for m, steps in zip(MODALITIES, (6, 9, 4))}
    masks = {m: torch.rand(batch, s.shape[1], generator=generator) > 0.3 for m, s in seqs.items()}
    for mask in masks.values():
        mask[:, 0] = True
    return seqs, masks


def test_tfn_fuses_the_outer_product_of_the_pooled_vectors_with_a_one_in_front():
    """Zadeh et al. 2017, eq. 1: z = [z_t; 1] (x) [z_a; 1] (x) [z_v; 1], then the post-fusion layer."""
    seqs, masks = inputs()
    fusion = TensorFusion(8, MODALITIES, pooled_dim=3).eval()
    seen = []
    fusion.post.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    fusion(seqs, masks)
    z = {m: torch.cat([torch.ones(5, 1), fusion.reduce[m](masked_mean(seqs[m], masks[m]))], -1) for m in MODALITIES}
    by_hand = torch.stack([torch.outer(torch.outer(z["text"][b], z["audio"][b]).flatten(), z["vision"][b]).flatten()
                           for b in range(5)])
    torch.testing.assert_close(seen[0], by_hand)


def test_lmf_at_full_rank_is_the_tfn_bilinear_form():
    """Liu et al. 2018: TFN's weight W (out x I x J x K) is sum_r (x)_m W_m[r]. Taking one rank per
    (i, j) pair (the text's and audio's unit vectors, and W's slice as the vision factor), LMF at
    rank I x J computes exactly TFN's W vec(z_t (x) z_a (x) z_v) + b."""
    seqs, masks = inputs()
    tfn = TensorFusion(8, MODALITIES, pooled_dim=2).eval()
    size = 3  # 1 + pooled_dim
    lmf = LowRankFusion(8, MODALITIES, rank=size * size, pooled_dim=2).eval()
    lmf.reduce.load_state_dict(tfn.reduce.state_dict())
    weight = tfn.post[1].weight.detach().view(8, size, size, size)  # (out, i, j, k)
    unit = torch.eye(size)[:, :, None].expand(size, size, 8)  # unit[i]: e_i in every output column
    with torch.no_grad():
        for r in range(size * size):
            i, j = divmod(r, size)
            lmf.factors["text"][r], lmf.factors["audio"][r] = unit[i], unit[j]
            lmf.factors["vision"][r] = weight[:, i, j, :].T
        lmf.rank_weights.fill_(1.0)
        lmf.bias.copy_(tfn.post[1].bias)
    torch.testing.assert_close(lmf(seqs, masks), tfn(seqs, masks))


def test_lmf_ignores_padding_and_works_on_unequal_steps():
    seqs, masks = inputs()
    lmf = LowRankFusion(8, MODALITIES).eval()
    out = lmf(seqs, masks)
    assert out.shape == (5, lmf.out_dim)
    scrambled = {m: torch.where(masks[m][..., None], s, torch.randn_like(s)) for m, s in seqs.items()}
    torch.testing.assert_close(lmf(scrambled, masks), out)

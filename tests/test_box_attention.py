"""Training-free trajectory attention: the boxes follow the path frame by frame, the chosen words' attention mass
moves into them (measured on the attention probabilities), only conditional rows change, context windows get
their frames' boxes, and the words are found in the prompt's tokens."""
import types

import pytest
import torch

from motionkit.control.box_attention import BoxAttention, BoxAttentionError, attention_with_bias, box_masks, word_tokens
from motionkit.trajectory.encoding import Path, encode_paths
import comfy_env

HEADS, DIM, TOKENS, WORDS = 2, 16, 12, [3, 4]


def straight_path(frames=4):
    # centre moves 16 px right per frame along y = 16, on a 64 x 64 canvas
    return encode_paths([Path([(16, 16), (16 + 16 * (frames - 1), 16)])], frames, 64, 64)


def hand_box(frame: int, h=8, w=8) -> torch.Tensor:
    """Box 0.25 x 0.25 (16 px) around (16 + 16 frame, 16) on an 8 x 8 map of 8-px cells (centres 4, 12, 20, ...):
    the cells whose centre is within 8 px: rows 1-2, columns 1+2f .. 2+2f."""
    m = torch.zeros(h, w, dtype=torch.bool)
    m[1:3, 1 + 2 * frame:3 + 2 * frame] = True
    return m.flatten()


def test_boxes_follow_the_path_frame_by_frame():
    masks = box_masks(straight_path(), [0, 1, 2, 3], 8, 8, 0.25, 0.25)
    for f in range(4):
        assert torch.equal(masks[f], hand_box(f)), f"frame {f}"
    # an inactive path (outside its frame range) has no box
    late = encode_paths([Path([(16, 16), (48, 16)], 2, 3)], 4, 64, 64)
    assert not box_masks(late, [0, 1], 8, 8, 0.25, 0.25).any()


def qkv(rows, n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, length, HEADS * DIM, generator=g) for length in (n, TOKENS, TOKENS)]


def probabilities(q, k, bias=None):
    q = q.view(q.shape[0], q.shape[1], HEADS, DIM).transpose(1, 2)
    k = k.view(k.shape[0], k.shape[1], HEADS, DIM).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / DIM ** 0.5
    if bias is not None:
        logits = logits + bias
    return logits.softmax(-1)  # [rows, heads, N, T]


def options(frames, chunks=(1, 0), window=None):
    opts = {"n_heads": HEADS, "activations_shape": [len(chunks) * frames, 320, 8, 8], "cond_or_uncond": list(chunks)}
    if window is not None:
        opts["context_window"] = types.SimpleNamespace(index_list=window)
    return opts


def test_attention_mass_of_the_words_moves_into_the_boxes():
    frames, strength = 4, 2.0
    box = BoxAttention(straight_path(frames), WORDS, strength, 0.25, 0.25)
    q, k, v = qkv(2 * frames)
    opts = options(frames)
    bias = box.bias(q.shape[0], TOKENS, opts)
    # the expected bias, from the hand-computed boxes: +s inside / -s outside for the words, cond rows only
    expected = torch.zeros(2 * frames, 1, 64, TOKENS)
    for f in range(frames):
        expected[frames + f, 0][:, WORDS] = torch.where(hand_box(f), strength, -strength)[:, None]
    assert torch.equal(bias, expected)

    out = box(q, k, v, opts)
    p = probabilities(q, k, expected)
    vh = v.view(v.shape[0], TOKENS, HEADS, DIM).transpose(1, 2)
    torch.testing.assert_close(out, (p @ vh).transpose(1, 2).reshape(out.shape), rtol=1e-5, atol=1e-5)

    before = probabilities(q, k)
    for f in range(frames):
        inside = hand_box(f)
        row = frames + f
        share = lambda p: p[row][:, inside][..., WORDS].sum() / p[row][..., WORDS].sum()
        assert share(p) > share(before) + 0.25, f"frame {f}: {share(before):.2f} -> {share(p):.2f}"
        # the other tokens' attention inside the box is not what grows
        assert p[row][:, inside][..., WORDS].sum() > 2 * before[row][:, inside][..., WORDS].sum()
    assert torch.equal(p[:frames], before[:frames])  # the unconditional rows are untouched


def test_context_window_uses_its_frames_boxes():
    box = BoxAttention(straight_path(4), WORDS, 1.0, 0.25, 0.25)
    bias = box.bias(2, TOKENS, options(2, chunks=(0,), window=[2, 3]))
    for i, f in enumerate((2, 3)):
        assert torch.equal(bias[i, 0, :, WORDS[0]] > 0, hand_box(f))


def words_share_inside(p, rows, words, frames):
    """Per cond row: the words' attention mass inside the frame's box (all copies of each word together)."""
    return torch.stack([p[r][:, hand_box(f)][..., words].sum() for r, f in zip(rows, range(frames))])


def test_a_long_negative_prompt_keeps_the_full_effect():
    """A negative prompt over 75 tokens makes ComfyUI repeat the positive context (77 tokens) to 154
    (CONDCrossAttn.concat). Every copy of the words is biased, so the cond rows' attention is exactly the
    short-negative one: the same boost inside the box and suppression outside; the uncond rows stay plain."""
    frames, strength, n = 4, 2.0, 77
    g = torch.Generator().manual_seed(5)
    q = torch.randn(2 * frames, 64, HEADS * DIM, generator=g)
    k_pos, v_pos = (torch.randn(1, n, HEADS * DIM, generator=g) for _ in range(2))
    k_neg, v_neg = (torch.randn(1, 2 * n, HEADS * DIM, generator=g) for _ in range(2))
    short = [torch.cat([kv[:, :n].expand(frames, -1, -1), p.expand(frames, -1, -1)])
             for kv, p in ((k_neg, k_pos), (v_neg, v_pos))]
    long = [torch.cat([kv.expand(frames, -1, -1), p.repeat(1, 2, 1).expand(frames, -1, -1)])
            for kv, p in ((k_neg, k_pos), (v_neg, v_pos))]
    box = BoxAttention(straight_path(frames), WORDS, strength, 0.25, 0.25, prompt_tokens=n)
    opts = options(frames)
    out_short, out_long = box(q, *short, opts), box(q, *long, opts)
    torch.testing.assert_close(out_long[frames:], out_short[frames:], rtol=1e-5, atol=1e-5)
    plain = attention_with_bias(q, *long, HEADS, torch.zeros(2 * frames, 1, 64, 2 * n))
    torch.testing.assert_close(out_long[:frames], plain[:frames], rtol=1e-5, atol=1e-5)

    # the effect measured as the issue did: the words' attention inside / outside the box, biased over plain
    rows = range(frames, 2 * frames)
    effect = {}
    for name, (k, words, length) in {"short": (short[0], WORDS, n),
                                     "long": (long[0], WORDS + [w + n for w in WORDS], 2 * n)}.items():
        before, after = probabilities(q, k), probabilities(q, k, box.bias(q.shape[0], length, opts))
        inside = words_share_inside(after, rows, words, frames) / words_share_inside(before, rows, words, frames)
        total = lambda p: torch.stack([p[r][..., words].sum() for r in rows])
        outside = ((total(after) - words_share_inside(after, rows, words, frames))
                   / (total(before) - words_share_inside(before, rows, words, frames)))
        effect[name] = (inside, outside)
    assert (effect["short"][0] > 3).all() and (effect["short"][1] < 0.5).all()  # the bias does act
    torch.testing.assert_close(effect["long"][0], effect["short"][0], rtol=1e-4, atol=0)
    torch.testing.assert_close(effect["long"][1], effect["short"][1], rtol=1e-4, atol=0)


def test_frames_without_an_active_path_get_no_bias():
    """A path active on frames 2-3 of 4: frames 0 and 1 have no box, and get no bias at all (not -strength
    everywhere, which would push the subject out of the picture); frames 2 and 3 get their boxes."""
    late = encode_paths([Path([(16, 16), (48, 16)], 2, 3)], 4, 64, 64)
    box = BoxAttention(late, WORDS, 2.0, 0.25, 0.25)
    bias = box.bias(4, TOKENS, options(4, chunks=(0,)))
    assert torch.equal(bias[:2], torch.zeros_like(bias[:2]))
    for f in (2, 3):
        assert set(bias[f, 0][:, WORDS].unique().tolist()) == {-2.0, 2.0}


@pytest.fixture(scope="module")
def comfy():
    if comfy_env.COMFYUI_ROOT is None:
        pytest.skip(comfy_env.SKIP_REASON)
    comfy_env.comfy_on_cpu()
    import comfy.ops
    return comfy


def test_outside_start_end_is_plain_attention(comfy):
    box = BoxAttention(straight_path(4), WORDS, 2.0, 0.25, 0.25, start_sigma=10.0, end_sigma=5.0)
    q, k, v = qkv(8)
    opts = {**options(4), "sigmas": torch.tensor([4.0])}
    plain = attention_with_bias(q, k, v, HEADS, torch.zeros(8, 1, 64, TOKENS))
    torch.testing.assert_close(box(q, k, v, opts), plain, rtol=1e-5, atol=1e-5)
    opts["sigmas"] = torch.tensor([7.0])
    assert not torch.allclose(box(q, k, v, opts), plain, atol=1e-4)


class WordClip:
    """CLIP double: one token per word, ids from a fixed vocabulary, start 1 / end 2, 77 per chunk."""
    vocab = {}

    def tokenize(self, text):
        ids = [self.vocab.setdefault(w, 10 + len(self.vocab)) for w in text.lower().replace(",", " ").split()]
        row = [(1, 1.0)] + [(i, 1.0) for i in ids] + [(2, 1.0)]
        return {"l": [row + [(2, 1.0)] * (77 - len(row))]}


def test_words_are_found_in_the_prompt_tokens():
    clip = WordClip()
    assert word_tokens(clip, "a red balloon over a red field", "red balloon") == [2, 3]
    assert word_tokens(clip, "a red balloon over a red field", "red, field") == [2, 6, 7]
    with pytest.raises(BoxAttentionError, match="'kite' not found in the prompt"):
        word_tokens(clip, "a red balloon", "kite")
    with pytest.raises(BoxAttentionError, match="no words given"):
        word_tokens(clip, "a red balloon", " , ")


def test_words_with_the_real_sd15_tokenizer(comfy):
    import comfy.sd1_clip
    tok = comfy.sd1_clip.SD1Tokenizer()
    clip = types.SimpleNamespace(tokenize=lambda t: tok.tokenize_with_weights(t))
    positions = word_tokens(clip, "a photo of a hot air balloon in the sky", "hot air balloon")
    assert positions == [5, 6, 7]  # after the start token: a(1) photo(2) of(3) a(4) hot(5) air(6) balloon(7)


def test_prompt_length_is_the_context_period(comfy):
    """The cond context's length per prompt, 77 per chunk, with the real SD1.5 tokenizer: ComfyUI repeats the
    cond in steps of it when the negative prompt is longer."""
    import comfy.sd1_clip
    from motionkit.control.box_attention import prompt_length
    tok = comfy.sd1_clip.SD1Tokenizer()
    clip = types.SimpleNamespace(tokenize=lambda t: tok.tokenize_with_weights(t))
    assert prompt_length(clip, "a red balloon") == 77
    assert prompt_length(clip, ", ".join(["a red balloon over a green field"] * 12)) == 154


def test_every_cross_attention_block_is_patched(comfy):
    from motionkit.control.box_attention import attention_blocks
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from unet_helpers import SD15_UNET, SDXL_UNET

    for config, count in ((SD15_UNET, 16), (SDXL_UNET, 70)):
        unet = UNetModel(**config, image_size=32, device="meta", operations=comfy.ops.disable_weight_init)
        keys = attention_blocks(unet)
        assert len(keys) == len(set(keys)) == count
    assert ("input", 1, 0) in attention_blocks(UNetModel(**SD15_UNET, image_size=32, device="meta",
                                                         operations=comfy.ops.disable_weight_init))

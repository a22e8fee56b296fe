"""The SUPERB ST head: conv subsampling + transformer encoder-decoder, label smoothing, beam search.

Shaped like fairseq's ``s2t_transformer`` (which s3prl's ST task uses), written
with plain ``torch.nn`` transformer layers (pre-norm) so that no fairseq is
needed. Input: featurized upstream hidden states ``[B, T, D]``; output: target
piece ids of a sentencepiece vocabulary.

Off by default, as in SUPERB: joint CTC / attention training (Watanabe et al.
2017; ESPnet-ST, Inaguma et al. 2020; s3prl's ``taskrc.use_asr`` multitask ASR,
``asrrc.weight``). With ``config.head.ctc_weight`` ``w > 0`` a linear CTC layer
on the encoder output predicts the source transcript's characters, and the
training loss is ``(1 - w) * label-smoothed CE + w * CTC``; decoding stays
attention-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from s3prl_colld.config import ConfigError


@dataclass
class STHeadConfig:
    """``config.head`` of the ST task; defaults: s3prl's ``downstream/speech_translation/config.yaml``.

    The model is fairseq's ``s2t_transformer`` architecture as s3prl configures it
    (``modelrc``: ``arch: s2t_transformer``, ``encoder_layers: 3``, ``decoder_layers: 3``,
    ``max_source_positions: 6000``; the architecture's own defaults: d_model 512,
    8 heads, FFN 2048, conv subsampler ``5,5`` with 1024 channels, dropout 0.1,
    pre-norm, sinusoidal positions, decoder input and output embeddings not
    shared). Decoding: ``generatorrc`` (beam 20, ``max_len_a`` 0, ``max_len_b``
    400). The target vocabulary is a character-level sentencepiece model
    (``prepare_gen_fairseq_vocab.py --model-type char``: every character of the
    training targets; ``vocab_size`` only bounds the other model types).
    """

    d_model: int = 512
    nhead: int = 8
    ffn_dim: int = 2048
    encoder_layers: int = 3
    decoder_layers: int = 3
    conv_channels: int = 1024
    conv_kernel: int = 5
    conv_layers: int = 2
    dropout: float = 0.1
    label_smoothing: float = 0.1
    beam: int = 20
    max_len_a: float = 0.0  # max target length = a * encoder frames + b
    max_len_b: int = 400
    length_penalty: float = 1.0  # hypothesis score = sum log p / length ** length_penalty
    max_source_positions: int = 6000  # longer inputs are cut to this many feature frames (s3prl cuts the wav)
    share_embeddings: bool = False  # tie the decoder's output projection to its input embedding
    spm_model_type: str = "char"  # sentencepiece model type: char | unigram | bpe | word
    vocab_size: int = 1000  # sentencepiece pieces asked for (char: ignored, every training character is a piece)
    # loss = (1 - w) * CE + w * CTC of the source characters on the encoder output (s3prl: taskrc.use_asr with
    # asrrc.weight w; ESPnet-ST's auxiliary ASR CTC); 0: SUPERB's model, no CTC layer. Decoding is unchanged.
    ctc_weight: float = 0.0
    # CTC output frames per encoder frame (ours, not s3prl's): the CTC layer predicts this many character
    # distributions per frame (a 50 Hz upstream + the 4x subsampler gives 12.5 Hz: fewer frames than characters)
    ctc_upsample: int = 1

    def validate(self) -> None:
        """Raise ``ConfigError`` on settings the head cannot be built or decoded with."""
        for name in ("d_model", "nhead", "ffn_dim", "encoder_layers", "decoder_layers", "conv_channels",
                     "conv_kernel", "conv_layers", "beam", "vocab_size", "max_source_positions", "ctc_upsample"):
            if getattr(self, name) < 1:
                raise ConfigError(f"config.head.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ConfigError(f"config.head.d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if self.conv_layers > 1 and self.conv_channels % 2:
            raise ConfigError(f"config.head.conv_channels ({self.conv_channels}) must be even: GLU halves it")
        if not 0.0 <= self.label_smoothing < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("config.head.label_smoothing and dropout must be in [0, 1)")
        if self.max_len_a < 0 or self.max_len_b < 0 or (self.max_len_a == 0 and self.max_len_b == 0):
            raise ConfigError(f"config.head.max_len_a ({self.max_len_a}) and max_len_b ({self.max_len_b}) must be "
                              ">= 0 and not both 0")
        if self.spm_model_type not in ("char", "unigram", "bpe", "word"):
            raise ConfigError(f"config.head.spm_model_type must be char, unigram, bpe or word, "
                              f"got {self.spm_model_type!r}")
        if not math.isfinite(self.length_penalty):
            raise ConfigError(f"config.head.length_penalty must be finite, got {self.length_penalty}")
        if not 0.0 <= self.ctc_weight < 1.0:
            raise ConfigError(f"config.head.ctc_weight must be in [0, 1) (0: no CTC branch, SUPERB's model; "
                              f"s3prl's asrrc.weight is 0.3), got {self.ctc_weight}")


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """``[length, dim]`` sin / cos position encodings (Vaswani et al.)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    out = torch.zeros(length, dim, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq)[:, : dim // 2]
    return out


def padding_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """``[B, length]``, True at padded positions."""
    return torch.arange(length, device=lengths.device)[None] >= lengths[:, None]


class Conv1dSubsampler(nn.Module):
    """``layers`` x (Conv1d stride 2 -> GLU): ``[B, T, in_dim]`` -> ``[B, T', out_dim]``, ``T'`` ~ ``T / 2^layers``.

    Channels: ``in_dim -> channels (GLU: channels / 2) -> ... -> 2 * out_dim (GLU: out_dim)``,
    as fairseq's ``Conv1dSubsampler``. Each layer maps a length ``n`` to
    ``floor((n + 2 * (kernel // 2) - kernel) / 2) + 1`` (``ceil(n / 2)`` for odd kernels).
    """

    def __init__(self, in_dim: int, channels: int, out_dim: int, kernel: int = 5, layers: int = 2) -> None:
        super().__init__()
        dims = [in_dim] + [channels // 2] * (layers - 1)
        outs = [channels] * (layers - 1) + [2 * out_dim]
        self.convs = nn.ModuleList(nn.Conv1d(i, o, kernel, stride=2, padding=kernel // 2) for i, o in zip(dims, outs))
        self.kernel = kernel

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [B, T, in_dim]``, ``lengths [B]`` -> ``(y [B, T', out_dim], lengths' [B])``.

        Padded frames are zeroed before every conv, so they never leak into
        valid outputs (a batched utterance equals the same utterance alone).
        """
        y = x.transpose(1, 2)  # [B, D, T]
        for conv in self.convs:
            y = y.masked_fill(padding_mask(lengths, y.size(2))[:, None], 0.0)
            y = F.glu(conv(y), dim=1)
            lengths = torch.div(lengths + 2 * (self.kernel // 2) - self.kernel, 2, rounding_mode="floor") + 1
        return y.transpose(1, 2), lengths


def ctc_feasible_length(labels: list[int]) -> int:
    """The fewest CTC frames that can emit ``labels``: one per label plus a blank between equal neighbours."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))


class STHead(nn.Module):
    """Encoder-decoder over featurized hidden states (fairseq ``s2t_transformer``-shaped).

    The output projection is a separate matrix (fairseq's default,
    ``share_decoder_input_output_embed: false``) unless ``cfg.share_embeddings``.
    With ``cfg.ctc_weight > 0`` a CTC layer ``Linear(d_model, ctc_upsample * ctc_vocab_size)``
    reads the encoder output (blank = 0, labels ``1 .. ctc_vocab_size - 1``); with
    0 it does not exist (s3prl's parameters exactly).
    """

    def __init__(self, in_dim: int, vocab_size: int, cfg: STHeadConfig, pad_id: int, bos_id: int,
                 eos_id: int, ctc_vocab_size: int = 0) -> None:
        super().__init__()
        self.cfg, self.pad_id, self.bos_id, self.eos_id = cfg, pad_id, bos_id, eos_id
        d = cfg.d_model
        self.scale = math.sqrt(d)
        self.subsample = Conv1dSubsampler(in_dim, cfg.conv_channels, d, cfg.conv_kernel, cfg.conv_layers)
        enc = nn.TransformerEncoderLayer(d, cfg.nhead, cfg.ffn_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(enc, cfg.encoder_layers, norm=nn.LayerNorm(d), enable_nested_tensor=False)
        dec = nn.TransformerDecoderLayer(d, cfg.nhead, cfg.ffn_dim, cfg.dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(dec, cfg.decoder_layers, norm=nn.LayerNorm(d))
        self.embed = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=d ** -0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
        self.out = nn.Linear(d, vocab_size, bias=False)
        if cfg.share_embeddings:
            self.out.weight = self.embed.weight
        else:
            nn.init.normal_(self.out.weight, std=d ** -0.5)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ctc: nn.Linear | None = None
        if cfg.ctc_weight > 0:  # built last: the other modules draw the same initial weights as without it
            if ctc_vocab_size < 2:
                raise ValueError(f"config.head.ctc_weight={cfg.ctc_weight} needs a source vocabulary (blank + at "
                                 f"least one label), got ctc_vocab_size={ctc_vocab_size}")
            self.ctc = nn.Linear(d, cfg.ctc_upsample * ctc_vocab_size)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T, D]`` -> memory ``[B, T', d_model]`` and its padding mask ``[B, T']``.

        Inputs longer than ``max_source_positions`` frames are cut to that length first.
        """
        limit = self.cfg.max_source_positions
        if x.size(1) > limit:
            x, lengths = x[:, :limit], lengths.clamp(max=limit)
        y, lengths = self.subsample(x, lengths)
        y = y * self.scale + sinusoidal_positions(y.size(1), y.size(2), y.device)
        mask = padding_mask(lengths, y.size(1))
        return self.encoder(self.dropout(y), src_key_padding_mask=mask), mask

    def decode(self, prev: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
        """Previous tokens ``[B, U]``, memory ``[B, T', d_model]``, its padding mask ``[B, T']``
        -> logits ``[B, U, V]`` (causal: position ``u`` sees tokens ``<= u``)."""
        u = prev.size(1)
        tgt = self.embed(prev) * self.scale + sinusoidal_positions(u, memory.size(2), prev.device)
        causal = torch.triu(torch.ones(u, u, dtype=torch.bool, device=prev.device), 1)
        h = self.decoder(self.dropout(tgt), memory, tgt_mask=causal, tgt_key_padding_mask=prev == self.pad_id,
                         memory_key_padding_mask=memory_mask)
        return self.out(h)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, prev_tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: features ``[B, T, D]``, lengths ``[B]``, previous tokens ``[B, U]``
        (``pad_id`` after each sequence's end) -> logits ``[B, U, V]``."""
        memory, mask = self.encode(x, lengths)
        return self.decode(prev_tokens, memory, mask)

    def teacher_forcing_batch(self, targets: list[list[int]], device: torch.device
                              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``prev = [bos] + y`` and ``gold = y + [eos]``, padded: two ``[B, max len + 1]`` tensors."""
        def padded(seqs: list[list[int]]) -> torch.Tensor:
            return pad_sequence([torch.tensor(s, dtype=torch.long) for s in seqs], True, self.pad_id).to(device)

        return padded([[self.bos_id, *t] for t in targets]), padded([[*t, self.eos_id] for t in targets])

    def label_smoothed_ce(self, logits: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """fairseq's label-smoothed cross entropy, summed over target tokens, divided by the sentences.

        As s3prl's ST expert (``criterion.compute_loss`` then ``loss /= nsentences``):
        per token ``(1 - eps - eps_i) * nll + eps_i * sum_v(-log p_v)`` with
        ``eps_i = eps / (V - 1)``; pads are ignored, eos is a target.
        ``logits [B, U, V]``, ``gold [B, U]`` (``pad_id`` after each sequence's end); returns a scalar.
        """
        logp = logits.float().log_softmax(-1)  # [B, U, V]
        eps = self.cfg.label_smoothing
        eps_i = eps / (logp.size(-1) - 1)
        valid = gold != self.pad_id
        nll = -logp.gather(-1, gold[..., None])[..., 0]
        smooth = -logp.sum(-1)
        per_token = (1.0 - eps - eps_i) * nll + eps_i * smooth
        return per_token.masked_fill(~valid, 0.0).sum() / gold.size(0)

    def ctc_log_probs(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``[B, T', d_model]`` and its padding mask ``[B, T']`` -> CTC log-probabilities
        ``[B, T' * k, ctc_vocab_size]`` and their lengths ``[B]`` (``k = ctc_upsample``: frame ``t``'s ``k``
        distributions are output frames ``t * k .. t * k + k - 1``)."""
        if self.ctc is None:
            raise RuntimeError("this STHead has no CTC layer (config.head.ctc_weight is 0)")
        b, t, _ = memory.shape
        k = self.cfg.ctc_upsample
        log_probs = self.ctc(memory).float().reshape(b, t * k, -1).log_softmax(-1)
        return log_probs, (~memory_mask).sum(1) * k

    def ctc_loss(self, memory: torch.Tensor, memory_mask: torch.Tensor, sources: list[list[int]]
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """CTC of the source labels on the encoder output, summed over the batch and divided by the sentences
        (the normalisation of :meth:`label_smoothed_ce`, as s3prl's ``count_asr_loss`` then ``/= nsentences``).

        ``memory [B, T', d_model]``, ``memory_mask [B, T']``, ``sources``: ``B`` lists of labels ``>= 1``
        (blank = 0). ``zero_infinity=True``: an utterance with fewer CTC frames than its labels need
        (:func:`ctc_feasible_length`) adds 0 and no gradient. Returns ``(loss [], infeasible [])``, the
        second the fraction of such utterances.
        """
        log_probs, out_lengths = self.ctc_log_probs(memory, memory_mask)  # [B, T' * k, V_src], [B]
        device = memory.device
        labels = torch.tensor([c for s in sources for c in s], dtype=torch.long, device=device)
        label_lengths = torch.tensor([len(s) for s in sources], dtype=torch.long, device=device)
        loss = F.ctc_loss(log_probs.transpose(0, 1), labels, out_lengths, label_lengths, blank=0,
                          reduction="sum", zero_infinity=True) / len(sources)
        needed = torch.tensor([ctc_feasible_length(s) for s in sources], device=device)
        return loss, (needed > out_lengths).float().mean()

    def loss_terms(self, x: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]],
                   sources: list[list[int]] | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss and its terms: ``x [B, T, D]``, ``lengths [B]``, ``targets``: ``B`` lists of piece
        ids (no bos / eos), ``sources``: ``B`` lists of source labels (needed when ``ctc_weight > 0``).

        ``ctc_weight`` 0: the label-smoothed CE (:meth:`label_smoothed_ce`) and no terms. ``w > 0``:
        ``(1 - w) * ce + w * ctc`` (:meth:`ctc_loss`) and the detached terms ``{"ce", "ctc",
        "ctc_infeasible"}`` (scalars, for logging).
        """
        prev, gold = self.teacher_forcing_batch(targets, x.device)
        memory, mask = self.encode(x, lengths)
        ce = self.label_smoothed_ce(self.decode(prev, memory, mask), gold)
        if self.ctc is None:
            return ce, {}
        if sources is None or len(sources) != len(targets):
            raise ValueError(f"config.head.ctc_weight={self.cfg.ctc_weight}: the loss needs one source label "
                             f"sequence per target ({len(targets)}), got "
                             f"{'none' if sources is None else len(sources)}")
        ctc, infeasible = self.ctc_loss(memory, mask, sources)
        w = self.cfg.ctc_weight
        return (1.0 - w) * ce + w * ctc, {"ce": ce.detach(), "ctc": ctc.detach(), "ctc_infeasible": infeasible}

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]],
             sources: list[list[int]] | None = None) -> torch.Tensor:
        """The training loss of :meth:`loss_terms` (``ctc_weight`` 0: fairseq's label-smoothed cross entropy,
        summed over target tokens, divided by the sentences, as s3prl's ST expert). Returns a scalar."""
        return self.loss_terms(x, lengths, targets, sources)[0]

    @torch.no_grad()
    def beam_search(self, x: torch.Tensor, lengths: torch.Tensor, beam: int | None = None,
                    max_len: int | None = None) -> list[list[int]]:
        """Batched beam search: features ``[B, T, D]``, lengths ``[B]`` -> ``B`` lists of piece ids (no bos / eos).

        The input is encoded once and its memory repeated to ``B * beam`` rows.
        Every utterance keeps ``beam`` live hypotheses; an eos among the best
        ``beam`` candidates of a step finishes a hypothesis with score
        ``sum log p / length ** length_penalty`` (length counts the eos); an
        utterance stops when it has ``beam`` finished ones. At most ``max_len``
        pieces (default ``int(max_len_a * T_enc + max_len_b)`` with ``T_enc``
        that utterance's encoder frames, so results do not depend on the batch);
        eos is forced after them. ``beam=1`` is greedy decoding. The decoder is
        rerun over the whole prefix each step (no incremental state).
        """
        beam = self.cfg.beam if beam is None else beam
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        if max_len is not None and max_len < 0:
            raise ValueError(f"max_len must be >= 0, got {max_len}")
        memory, mask = self.encode(x, lengths)
        b = x.size(0)
        if max_len is not None:
            limits = [max_len] * b
        else:
            limits = [int(self.cfg.max_len_a * int(n) + self.cfg.max_len_b) for n in (~mask).sum(1).tolist()]
        memory, mask = memory.repeat_interleave(beam, 0), mask.repeat_interleave(beam, 0)
        tokens = torch.full((b * beam, 1), self.bos_id, dtype=torch.long, device=x.device)
        scores = torch.full((b, beam), -math.inf, device=x.device)  # [B, beam]; only one live row at the start
        scores[:, 0] = 0.0
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
        forced = torch.tensor([lim for lim in limits for _ in range(beam)], device=x.device)  # [B * beam]
        for step in range(max(limits) + 1):
            logp = self.decode(tokens, memory, mask)[:, -1].float().log_softmax(-1)  # [B * beam, V]
            logp[:, [self.pad_id, self.bos_id]] = -math.inf
            at_limit = forced == step
            if bool(at_limit.any()):  # only eos may follow max_len pieces
                eos = logp[at_limit, self.eos_id]
                logp[at_limit] = -math.inf
                logp[at_limit, self.eos_id] = eos
            vocab = logp.size(1)
            cand = (scores.reshape(-1, 1) + logp).reshape(b, beam * vocab)
            top, idx = cand.topk(min(2 * beam, cand.size(1)), dim=1)  # >= beam non-eos among 2 * beam
            top_l, idx_l = top.tolist(), idx.tolist()
            following: list[tuple[int, int, float]] = []  # (source row, token, score) of each next row
            for i in range(b):
                live: list[tuple[int, int, float]] = []
                done = len(finished[i]) >= beam or step > limits[i]
                for rank, (score, j) in enumerate(zip(top_l[i], idx_l[i])):
                    if done or score == -math.inf:
                        break
                    src, tok = i * beam + j // vocab, j % vocab
                    if tok == self.eos_id:
                        if rank < beam:
                            finished[i].append((score / (step + 1) ** self.cfg.length_penalty,
                                                tokens[src, 1:].tolist()))
                    elif len(live) < beam:
                        live.append((src, tok, score))
                # a finished utterance, or too few live candidates: dead padding rows
                following += live + [(i * beam, self.eos_id, -math.inf)] * (beam - len(live))
            if all(len(f) >= beam or step >= lim for f, lim in zip(finished, limits)):
                break
            rows, toks, scs = zip(*following)
            tokens = torch.cat([tokens[list(rows)], torch.tensor(toks, device=x.device)[:, None]], 1)
            scores = torch.tensor(scs, device=x.device).reshape(b, beam)
        return [max(f, key=lambda h: h[0])[1] if f else [] for f in finished]

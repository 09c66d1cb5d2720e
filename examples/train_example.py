"""Train a tiny image-conditioned byte-level language model on a facecorpus output, streamed with
`facecorpus.loader` through a torch DataLoader.

It shows the loader as a training job uses it — shard streaming with workers, shuffle buffer,
resampling for multi-node runs (`torchrun --nproc_per_node N examples/train_example.py ...` works:
each rank draws its own shard stream), an epoch measured in samples — with a model small enough to
run on a laptop CPU. Real fine-tuning of a vision LLM would keep the data side unchanged and swap
the model for one from `transformers` (use `format="messages"` for its chat template) or go through
`facecorpus export --format sharegpt` and LLaMA-Factory.

    .venv/bin/facecorpus demo --out out/demo
    .venv/bin/python examples/train_example.py out/demo --steps 30
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from facecorpus.loader import make_dataset

IMAGE_SIDE = 64
MAX_BYTES = 192
PAD = 256  # byte values are 0..255; 256 pads, 257 starts a sequence


def encode(image, conversation) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001 - PIL image, ShareGPT turns
    """Image → (3, 64, 64) float tensor; the first QA pair → 'Q: … A: …' as bytes, start-token first."""
    pixels = np.asarray(image.resize((IMAGE_SIDE, IMAGE_SIDE)), dtype=np.float32) / 255.0
    question, answer = conversation[0]["value"].removeprefix("<image>"), conversation[1]["value"]
    data = list(f"Q: {question}\nA: {answer}".encode()[: MAX_BYTES - 1])
    tokens = torch.full((MAX_BYTES,), PAD, dtype=torch.long)
    tokens[0] = 257
    tokens[1 : len(data) + 1] = torch.tensor(data)
    return torch.from_numpy(pixels).permute(2, 0, 1), tokens


def collate(batch: list) -> tuple[torch.Tensor, torch.Tensor]:
    images, tokens = zip(*(encode(img, conv) for img, conv in batch), strict=True)
    return torch.stack(images), torch.stack(tokens)


class TinyCaptioner(nn.Module):
    """A CNN encodes the face image into the initial state of a GRU that predicts the next byte."""

    def __init__(self, hidden: int = 256) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(3, 32, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 4, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, hidden),
        )
        self.embed = nn.Embedding(258, 64)
        self.rnn = nn.GRU(64, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 257)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        h0 = torch.tanh(self.encoder(images)).unsqueeze(0)
        out, _ = self.rnn(self.embed(tokens[:, :-1]), h0)
        return self.head(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", help="facecorpus output folder (local, gs://, s3://) or shard URLs pattern")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()

    if "RANK" in os.environ and not torch.distributed.is_initialized():  # started by torchrun
        torch.distributed.init_process_group("gloo")
    torch.manual_seed(0)
    # resampled: every worker of every rank draws shards with replacement — no rank waits for another
    # at the end of an epoch; the epoch is a number of samples per worker
    per_worker = max(1, args.steps * args.batch_size // max(1, args.workers))
    dataset = make_dataset(args.source, format="sharegpt", turns="qa", resampled=True, shuffle=200).with_epoch(per_worker)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers, collate_fn=collate)
    model = TinyCaptioner()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    for step, (images, tokens) in enumerate(loader, start=1):
        logits = model(images, tokens)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step == 1 or step % 10 == 0:
            print(f"step {step:4d}  loss {loss.item():.3f}  ({images.shape[0]} samples)", flush=True)
        if step >= args.steps:
            break


if __name__ == "__main__":
    main()

"""The scalar an attribution explains, and that a faithfulness curve records, for one batch of images.

A target maps the model's pooled embeddings (B, D) of (possibly perturbed) images to one number per
image (B,), differentiably. Gradient methods (Chefer, Grad-CAM for ViTs, Integrated Gradients) explain
it; deletion and insertion curves record it as patches are removed or restored.

Self-supervised encoders have no class head. The default target is the image's **projection onto its
own unperturbed embedding direction**, s(x) = <e(x), e0 / |e0|>, with e0 = e(x0) of the unperturbed
image, held fixed (detached). Not the cosine similarity cos(e(x), e0): the cosine is at its maximum, 1,
at x = x0, so its gradient there is zero (measured on the demo's tiny CLIP: largest input-gradient
entry 1.9e-10, against 2.7e-3 for this projection) and every gradient map at the image itself would be
blank. The projection has the same reference (the image's own embedding) and falls when the embedding
turns away from e0 or shrinks, its gradient at x0 is J^T e0/|e0| (nonzero), and s(x0) = |e0|.
`relative=True` divides by s(x0), so a faithfulness curve starts at 1.

Where a head exists (a fine-tuned style head, a geo probe), `ClassScore` explains one class's logit
per image: the predicted class unless classes are given.

`ExplainedScalar` is the choice made once per extraction or faithfulness run and handed to the gradient
methods: a fine-tuned variant whose folder holds `head.safetensors` explains `ClassScore` of that head
on the pooled embedding (the features it was trained on), each image's predicted class; every other
model `SelfSimilarity`. Its `name` is what attention.h5 records as `map_target` and faithfulness.parquet
as `target`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

TARGETS = ("self_similarity", "class_score")


class SelfSimilarity:
    """s(x) = <e(x), e0/|e0|> for each image's own unperturbed embedding e0 (B, D), held fixed."""

    name = "self_similarity"

    def __init__(self, reference: torch.Tensor, relative: bool = False):
        reference = reference.detach().float()
        norm = reference.norm(dim=-1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError("an unperturbed embedding is all zero: no direction to project onto")
        self.direction = reference / norm
        self.scale = norm.squeeze(-1) if relative else None

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        direction = self.direction.to(embeddings.device)
        if embeddings.shape[0] != direction.shape[0] and direction.shape[0] != 1:
            # a batch of perturbations of the same images, repeated in order: image i at rows i, i+B, ...
            direction = direction.repeat(embeddings.shape[0] // direction.shape[0], 1)
        score = (embeddings.float() * direction).sum(dim=-1)
        if self.scale is not None:
            scale = self.scale.to(embeddings.device)
            score = score / scale.repeat(embeddings.shape[0] // scale.shape[0])
        return score


class ClassScore:
    """One class's logit of a linear head on the embedding: each image's predicted class (argmax on the
    unperturbed embedding, fixed from then on) unless `classes` are given."""

    name = "class_score"

    def __init__(self, head: torch.nn.Module, reference: torch.Tensor,
                 classes: Sequence[int] | None = None):
        self.head = head
        if classes is None:
            with torch.no_grad():
                classes = head(reference.float()).argmax(dim=-1).tolist()
        if len(classes) != reference.shape[0]:
            raise ValueError(f"{len(classes)} target classes for {reference.shape[0]} images")
        self.classes = torch.as_tensor(list(classes), dtype=torch.long)

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        logits = self.head(embeddings.float())
        classes = self.classes.to(logits.device)
        classes = classes.repeat(logits.shape[0] // classes.shape[0])
        return logits.gather(1, classes[:, None]).squeeze(1)


class ExplainedScalar:
    """The target of one run: `explained(reference)` builds it for a batch whose unperturbed pooled
    embeddings are `reference` (B, D). With a `head`: `ClassScore` of each image's predicted class (a
    logit, never relative: it can be zero or negative); without: `SelfSimilarity`."""

    def __init__(self, head: torch.nn.Module | None = None):
        self.head = head

    @property
    def name(self) -> str:
        return SelfSimilarity.name if self.head is None else ClassScore.name

    @classmethod
    def for_variant(cls, tuned_folder: str | Path | None) -> "ExplainedScalar":
        """The head of a fine-tuned variant's folder (`models.tuned.load_head`), if it has one."""
        from encoderlens.models.tuned import load_head
        return cls(load_head(tuned_folder))

    def __call__(self, reference: torch.Tensor, relative: bool = False):
        if self.head is None:
            return SelfSimilarity(reference, relative=relative)
        return ClassScore(self.head.to(reference.device), reference)

"""What each model family is, as plain data: one row per family, read by its adapter and by the rules.

Torch-free on purpose: `rules/common.smk` (which may not import torch) and the hub snapshot job read
it, and the adapters take their class attributes from it, so a family's traits are written once.
Which attention maps a family produces is decided by the map methods themselves
(`encoderlens.attention.methods`, each method's `applies(traits)`), from the traits below.

| trait          | meaning                                                                          |
|----------------|----------------------------------------------------------------------------------|
| `adapter`      | "module:Class" of the adapter under encoderlens.models, imported when first used |
| `attention`    | a transformer whose layers return softmax attention (False: a CNN)               |
| `has_cls`      | a CLS token comes first in the token sequence                                    |
| `registers`    | register tokens follow the CLS token; their number is the checkpoint config's   |
|                | `num_register_tokens`                                                            |
| `pooling`      | how the image embedding is pooled: `cls`, `map` (attention-pooling head), `avg`, |
|                | or `checkpoint`: as each checkpoint declares it (recorded in ModelInfo.extra)    |
| `lora_targets` | the attention projections LoRA adapts (peft `target_modules`); empty: no LoRA    |
|                | (fine-tuning blocks: the adapter's `blocks()` / `after_blocks()`)                |
| `hub_files`    | the checkpoint files besides the weights that loading reads                     |
| `hub_ids`      | hub ids known to load with the family; the first is the default checkpoint       |
"""

from __future__ import annotations

from dataclasses import dataclass

# transformers' config and image-processor files; timm snapshots carry their normalisation in
# config.json's pretrained_cfg and have no preprocessor_config.json
HF_CONFIG_FILES = ("config.json", "preprocessor_config.json")
# transformers 5 names the attention projections q_proj/k_proj/v_proj in every ViT family here
VIT_LORA_TARGETS = ("q_proj", "v_proj")
# timm's ViT and EVA blocks project queries, keys and values with one fused Linear, `attn.qkv`
TIMM_LORA_TARGETS = ("qkv",)
# where the README explains how to bring a model of one's own
OWN_MODEL_DOCS = "the README section 'Your own model: a hub or timm checkpoint'"


@dataclass(frozen=True)
class FamilyTraits:
    name: str
    adapter: str
    attention: bool
    has_cls: bool
    registers: bool
    pooling: str
    lora_targets: tuple[str, ...]
    hub_files: tuple[str, ...]
    hub_ids: tuple[str, ...]

    @property
    def default_hub_id(self) -> str:
        return self.hub_ids[0]


FAMILIES: dict[str, FamilyTraits] = {traits.name: traits for traits in (
    FamilyTraits("dinov2", "dinov2:Dinov2Adapter", attention=True, has_cls=True, registers=True,
                 pooling="cls", lora_targets=VIT_LORA_TARGETS, hub_files=HF_CONFIG_FILES,
                 hub_ids=("facebook/dinov2-with-registers-base", "facebook/dinov2-base")),
    FamilyTraits("dinov3", "dinov3:Dinov3Adapter", attention=True, has_cls=True, registers=True,
                 pooling="cls", lora_targets=VIT_LORA_TARGETS, hub_files=HF_CONFIG_FILES,
                 hub_ids=("facebook/dinov3-vitb16-pretrain-lvd1689m",)),
    FamilyTraits("mae", "mae:MaeAdapter", attention=True, has_cls=True, registers=False,
                 pooling="cls", lora_targets=VIT_LORA_TARGETS, hub_files=HF_CONFIG_FILES,
                 hub_ids=("facebook/vit-mae-base",)),
    # StreetCLIP is CLIP ViT-L/14 at 336 px
    FamilyTraits("clip", "clip:ClipAdapter", attention=True, has_cls=True, registers=False,
                 pooling="cls", lora_targets=VIT_LORA_TARGETS, hub_files=HF_CONFIG_FILES,
                 hub_ids=("openai/clip-vit-base-patch16", "geolocal/StreetCLIP")),
    FamilyTraits("siglip", "siglip:SiglipAdapter", attention=True, has_cls=False, registers=False,
                 pooling="map", lora_targets=VIT_LORA_TARGETS, hub_files=HF_CONFIG_FILES,
                 hub_ids=("google/siglip2-base-patch16-224",)),
    FamilyTraits("resnet", "resnet:ResnetAdapter", attention=False, has_cls=False, registers=False,
                 pooling="avg", lora_targets=(), hub_files=("config.json",),
                 hub_ids=("timm/resnet50.a1_in1k",)),
    # any transformers ViT that returns attentions (ViT, DINO v1, DeiT, BEiT, DINOv2): the checkpoint's
    # model_type decides the class and its prefix tokens; registers only where the config has them
    FamilyTraits("vit", "vit:VitAdapter", attention=True, has_cls=True, registers=True,
                 pooling="checkpoint", lora_targets=VIT_LORA_TARGETS, hub_files=HF_CONFIG_FILES,
                 hub_ids=("google/vit-base-patch16-224", "facebook/dino-vitb16", "facebook/dinov2-base",
                          "facebook/deit-base-distilled-patch16-224", "microsoft/beit-base-patch16-224")),
    # timm vision transformers (ViT, DeiT, DINOv2, EVA-02) by hub name; timm snapshots hold config.json
    # (architecture + pretrained_cfg) and model.safetensors, as for resnet
    FamilyTraits("timm", "timm_vit:TimmVitAdapter", attention=True, has_cls=True, registers=True,
                 pooling="checkpoint", lora_targets=TIMM_LORA_TARGETS, hub_files=("config.json",),
                 hub_ids=("timm/vit_base_patch16_224.augreg2_in21k_ft_in1k", "timm/vit_small_patch14_dinov2.lvd142m",
                          "timm/deit_small_patch16_224.fb_in1k", "timm/eva02_small_patch14_224.mim_in22k")),
)}


def family_traits(family: str) -> FamilyTraits:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known families: {', '.join(FAMILIES)}. A hub "
                         f"ViT is family vit, a timm model family timm: see {OWN_MODEL_DOCS}") from None

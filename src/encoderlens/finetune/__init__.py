"""Style fine-tuning: does task training move attention toward what experts mark?

task        the style labels and the held-out / train / validation split (no torch)
lora        peft LoRA over an adapter's attention projections; adapter-only safetensors (reusable)
strategies  what linear, lora and full train and save
training    the loop: AdamW, warm-up + cosine, clipping, early stopping, exact resume
job         one workflow job: train a strategy, write its weights, history and metrics
delta       per-image ΔIoU of tuned minus frozen and the retention ratio (no torch)
style_probe cross-validated style probe on frozen embeddings (no torch)
"""

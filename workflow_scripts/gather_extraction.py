from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.extract.gather import gather_extraction

gather_extraction(
    chunk_embeddings=list(snakemake.input.embeddings),
    chunk_attention=list(snakemake.input.attention),
    manifest_path=snakemake.input.manifest,
    embeddings_path=snakemake.output.embeddings,
    attention_path=snakemake.output.attention,
    splits=snakemake.params.splits,
)
log_done(snakemake.output)

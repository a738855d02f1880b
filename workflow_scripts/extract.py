from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.extract.job import extract_manifest

extract_manifest(
    manifest_path=snakemake.input.manifest,
    model_folder=snakemake.input.model,
    identity=snakemake.params.identity,
    settings=snakemake.params.settings,
    embeddings_path=snakemake.output.embeddings,
    attention_path=snakemake.output.attention,
    threads=snakemake.threads,
    variant=snakemake.wildcards.variant,
    tuned_folder=snakemake.params.tuned_folder,
    splits=snakemake.params.splits,
    # extract_chunk: its rows of the manifest's images; extract: all of them
    rows=tuple(snakemake.params.rows) if hasattr(snakemake.params, "rows") else None,
)
log_done(snakemake.output)

from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.data.osv5m_fetch import fetch_osv5m

settings = snakemake.params.download
fetch_osv5m(
    snakemake.output[0],
    repo_id=settings["repo_id"],
    revision=settings["revision"],
    split=settings["split"],
    shards=settings["shards"],
    sample_count=settings["sample_count"],
    seed=settings["sample_seed"],
    stratify=settings["stratify"],
    archive_limits=settings.get("archive_limits"),
)
log_done(snakemake.output)

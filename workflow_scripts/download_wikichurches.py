from encoderlens.logs import log_to

log_to(snakemake.log[0])

from encoderlens.data.zenodo import fetch_wikichurches

settings = snakemake.params.download
fetch_wikichurches(
    snakemake.output[0],
    base_url=settings["base_url"],
    checksums=settings["checksums"] or None,
    images=settings["images"],
    keep_archive=settings["keep_archive"],
)

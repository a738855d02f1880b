from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.data.zenodo import fetch_wikichurches, zenodo_file_info

settings = snakemake.params.download
checksums, sizes = settings["checksums"] or None, None
if checksums is None and settings["api_url"]:
    # the record's own listing of sizes and md5 sums verifies every file, the 12 GB zip included
    sizes, checksums = zenodo_file_info(settings["api_url"])
fetch_wikichurches(
    snakemake.output[0],
    base_url=settings["base_url"],
    checksums=checksums,
    sizes=sizes,
    images=settings["images"],
    keep_archive=settings["keep_archive"],
    archive_limits=settings.get("archive_limits"),
)
log_done(snakemake.output)

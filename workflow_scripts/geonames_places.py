from encoderlens.logs import log_done, log_to

log_to(snakemake.log[0])

from encoderlens.data.geonames import write_places_table

settings = snakemake.params.geonames
write_places_table(
    snakemake.output.places,
    source=settings["source"],
    dump_url=settings["dump_url"],
    min_population=settings["min_population"],
    admin_dest=snakemake.output.admin,
)
log_done(snakemake.output)

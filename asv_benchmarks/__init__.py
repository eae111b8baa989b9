"""airspeed velocity (asv) benchmarks of numbadeconv; see ``asv.conf.json`` and the README."""

"""Tools around tfscale (studies, benchmarks, the cluster cost model): they import the library, it never
imports them."""

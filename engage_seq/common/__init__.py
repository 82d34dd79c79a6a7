"""Common: what every layer needs and no layer owns, with no heavy dependency.

Atomic writes and locks (`io`), the `EngageSeqError` base (`errors`), time parsing and
formatting (`times`), what an error message may show of user data (`messages`), small
statistics without scipy (`stats`), where the Hydra configs live (`config_dir`), which code a
config may name and where trust to name more comes from (`safe_config`, `trust`,
`untrusted_yaml`), and where 0.1's classes went (`moved`). It imports no other subpackage and
neither torch, Lightning nor Hydra at import time (`safe_config` reads OmegaConf nodes; it
imports Hydra's compose only inside the functions that need it).
"""

"""The presets shipped with rlsuite, as data: `agents/<name>.toml` recipes and `envs/<name>.toml` env settings
(read by rlsuite.config.presets)."""

"""mailpubc: compile a mail-publishing policy into an nftables ruleset."""

"""What crosses processes: where Redis is (``connection``), the channel-layer groups (``bus``), the
quote store every process can read (``store``), and the lease that lets one feed write it (``lease``)."""

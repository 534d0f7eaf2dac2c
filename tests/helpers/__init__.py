"""What the tests share: real processes (``procs``), deployments built from them (``sites``),
real clients (``clients``, ``admin``), waiting for conditions (``waiting``) and stream checks
(``streams``). Test modules import from here, never from each other or from conftest."""

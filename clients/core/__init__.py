"""The client core: everything the sync (`clients.sync`) and asyncio (`clients.aio`) clients
decide, written once and without I/O, as httpx and h11 keep their protocol logic apart from
their sockets.

The core says what to send next, whether to retry and after how long, which batch connections
to reopen so that they reach every worker process, and checks and assembles the answers; the
two clients only send, receive, sleep and run threads or tasks:

- `clients.core.retry`: deadlines, backoff and the attempts of a call (`Attempts`);
- `clients.core.health`: waiting for the server to say SERVING (`ServingWait`);
- `clients.core.spread`: spreading batch connections over worker processes (`SpreadProbes`);
- `clients.core.chunks`: cutting a batch into chunks and handing them to streams;
- `clients.core.streams`: one stream's calls and the check of every answer against what was
  sent; the results of all streams of a batch;
- `clients.core.batch`: one batch (`BatchRun`), its options, order and assembly;
- `clients.core.base_client`: what a client keeps between calls (`BaseClient`).
"""

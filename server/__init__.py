"""The LEZ access-decision gRPC server (`lez-server`).

`config` builds the one `ServerConfig`; `app` assembles a `grpc.aio` server in one process;
`workers` forks worker processes sharing one port; `service` translates proto to domain and back;
`pipeline` is the vectorised hot path; `status` is the one error table; `auth` maps client
certificates to organisations, roles, zones and limits; `audit` keeps the hash-chained log of
every consultation; `state` holds the published store and follows hot reloads; `certs` makes
development certificates.
"""

"""proxyd: an HTTPS CONNECT proxy that hands provider traffic to bridged.

A connection's path: server.py reads the CONNECT (h11) and checks the token → for a
provider host, mitm.py terminates TLS (certificates from certs.py) and forwards each
request to bridged; for any other host, tunnel.py checks the policy and splices bytes.
The host map comes from routes.py, swapped whole by reload.py on each snapshot.
"""

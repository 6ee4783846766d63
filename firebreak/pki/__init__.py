"""An estate's certificates and etcd identities (`firebreak pki`): plan.py decides what each host
holds and what is due (pure), x509.py makes and reads certificates, store.py writes them where
`firebreak deploy render` references them, etcd_users.py makes etcd's users and roles match
control/keys.py role_grants. docs/PKI.md is the procedure."""

"""The folder the mutation runner puts on PYTHONPATH: it holds only `sitecustomize`."""

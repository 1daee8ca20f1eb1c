"""``natpool store``: look at a cluster store (``natpool store status URL``, in :mod:`~natpool.apps.store.command`)."""

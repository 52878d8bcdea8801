"""Content credentials (C2PA): the manifest store of each analysed video, read in a worker process
(``read``, ``worker``), summarised for the answer, and the verdict policy (``policy``).

Nothing is imported here: the worker processes import ``read`` alone (the C2PA bindings and the standard library).
"""

"""fedllm differential-privacy plugins (entry-point group ``fedllm.privacy``).

* ``user-dp``: FedLLM-Bench's user-level DP, local: each client clips its update to C and adds
  N(0, σ²) before upload; σ fixed or from the paper's formula (module :mod:`.user_dp`).
* ``dp-fedavg``: central DP-FedAvg (McMahan et al. 2018): the server clips each update, adds
  N(0, z²C²) to the sum and divides by qN; opacus' RDP accountant reports ε per round, calibrates
  z for a target ε and stops a run before it exceeds its budget (module :mod:`.dp_fedavg`).

Both compose with any task and with every algorithm whose server rule starts from the mean of
the client updates. Shared arithmetic (clipping, seeded noise, σ formula, accountant) is in
:mod:`.mechanisms`.
"""

"""The per-VM monitor (binary translation, shadow page tables, device emulation): to come."""

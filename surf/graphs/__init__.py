"""Communication graphs in PyG's conventions: graph families (``generators``), named topologies and specs
(``topology``), graph shift operators (``gso``) and their spectra, one communication round (``aggregate``), the
graph filter of eq. 12 as a PyG ``MessagePassing`` module (``filter``), the per-step network with dropped agents'
message buffers (``network``), per-step operators with lost links (``dynamic``) and communication cost (``comm``)."""

# Data written by an older Hypha: mesh roots stored as MeshTrust move to
# MeshCaRoot when a control plane opens its store (cp/cp_mesh_ca.c).
hy_unit_test(test_cp_migrate LIBS hypha-cp)


c-9f1e0b7d22c4a681ç붷3aff-7"off-11*device:7c1e9a0e22a02:8108:1140:5e00::1f

ord-1off-2"c-12saleBEURH
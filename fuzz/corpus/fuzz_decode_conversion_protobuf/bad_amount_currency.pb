
ord-1üìØ··3off-2"c-12sale8ûÿÿÿÿÿÿÿÿBusd
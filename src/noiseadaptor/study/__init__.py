"""Studies: one method trained, converted and simulated at one seed (`cell`), and the paired
multi-seed comparison of methods (`study`)."""

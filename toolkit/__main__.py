from edge_distill.cli import main

main()

from ebill.cli import main

main()

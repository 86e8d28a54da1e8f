from cclink.cli import main

main()

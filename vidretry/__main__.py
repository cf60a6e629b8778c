from vidretry.cli import main

main()

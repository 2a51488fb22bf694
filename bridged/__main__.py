from bridged.main import main

main()

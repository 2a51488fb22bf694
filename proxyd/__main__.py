from proxyd.main import main

main()

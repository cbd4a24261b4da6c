from perception.cli import main

raise SystemExit(main())

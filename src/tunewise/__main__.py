from tunewise.cli import main

raise SystemExit(main())

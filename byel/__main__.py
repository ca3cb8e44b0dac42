from byel.cli import main

raise SystemExit(main())

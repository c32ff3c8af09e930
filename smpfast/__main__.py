from smpfast.cli import main

raise SystemExit(main())

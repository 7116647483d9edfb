from vggnet.cli import main

raise SystemExit(main())

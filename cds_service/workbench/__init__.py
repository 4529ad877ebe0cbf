"""The rule workbench (`/workbench`): rule pages, playground and analytics for rule authors."""

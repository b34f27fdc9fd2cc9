"""What crosses a boundary: API request/response models and workflow/activity inputs and results."""
